"""Run `hpo` as real processes on synthetic MNIST: for tests whose point is several processes.

`hpo run --jobs N` starts its workers as `python -m hpo.cli`, so patching the expected digests in
one process (test_cli_run's launcher) would not reach them. Here a `sitecustomize` on PYTHONPATH
patches them in every Python process the test starts, parent and workers alike, and only there:
the product keeps no switch for skipping verification.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.data import raw_dir
from tests.support.synthetic import file_digests, make_synthetic_mnist

REPO = Path(__file__).resolve().parents[2]
HOOK = """\
import json, os
if os.environ.get("HPO_TEST_DIGESTS"):
    import hpo.data
    with open(os.environ["HPO_TEST_DIGESTS"]) as f:
        hpo.data.MNIST_FILES.update(json.load(f))
"""
SPEC = """
trials = {trials}
epochs = {epochs}
seed = 0
objective = "{objective}"
[sampler]
name = "{sampler}"
{sampler_options}
[pruner]
name = "none"
[space]
lr = {{ low = 1e-3, high = 0.3, log = true }}
momentum = {{ low = 0.5, high = 0.95 }}
hidden1 = {hidden1}
hidden2 = {hidden2}
schedule = {{ choices = ["tutorial", "cosine", "none"] }}
gamma = {{ low = 0.5, high = 0.99 }}
step_every = {{ low = 1, high = 3 }}
head = "logits"
"""
# Every attribute a trial that ran to its end carries: the schema hpo report reads.
USER_ATTRS = {
    "config",
    "seed",
    "is_baseline",
    "origin",
    "sampler",
    "pruner",
    "curves",
    "epochs_run",
    "device",
    "device_name",
    "process",
    "versions",
    "compiled",
    "no_compile",
    "aot",
    "cuda_graph",
    "param_count",
    "reason",
    "wall_seconds",
}


@dataclass(frozen=True)
class Launcher:
    """Builds `hpo` commands that run in ``cwd`` on the synthetic data in ``data_dir``."""

    cwd: Path
    data_dir: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hpo.cli", *args]

    def run_args(self, spec: Path, study: str, url: str, trials: int, *extra: str) -> list[str]:
        return self.command(
            "run",
            "--spec",
            str(spec),
            "--study",
            study,
            "--storage",
            url,
            "--trials",
            str(trials),
            "--data-dir",
            str(self.data_dir),
            "--device",
            "cpu",
            "--heartbeat",
            "1",
            "--no-compile",
            *extra,
        )

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen(
            list(cmd),
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_default_sigint,
            **kw,
        )

    def run(self, cmd: Sequence[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(cmd), cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=timeout
        )


def _default_sigint() -> None:
    # A shell starts a background job (`pytest &`) with SIGINT ignored, children inherit that,
    # and Python then installs no KeyboardInterrupt handler: the Ctrl-C tests would see nothing.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def make_launcher(base: Path, data_dir: Path, cwd: Path) -> Launcher:
    """A launcher whose processes accept the synthetic files in ``data_dir``."""
    hook = base / "hook"
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "sitecustomize.py").write_text(HOOK)
    digests = base / "digests.json"
    digests.write_text(json.dumps(file_digests(raw_dir(data_dir))))
    path = os.pathsep.join([str(hook), str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "HPO_TEST_DIGESTS": str(digests)}
    env.pop("HPO_STORAGE", None)
    return Launcher(cwd, data_dir, env)


def synthetic_data(root: Path) -> Path:
    # Mnist.load holds out 10,000 validation images: 16,000 leaves 6,000 to train on.
    make_synthetic_mnist(root, 16_000, 200, seed=0)
    return root


def write_spec(
    path: Path,
    *,
    epochs: int = 2,
    hidden1: object = 16,
    hidden2: object = 8,
    sampler: str = "tpe",
    trials: int = 4,
    objective: str = "val_acc",
) -> Path:
    options = "n_startup_trials = 2" if sampler == "tpe" else ""
    path.write_text(
        SPEC.format(
            epochs=epochs,
            objective=objective,
            hidden1=hidden1,
            hidden2=hidden2,
            sampler=sampler,
            sampler_options=options,
            trials=trials,
        )
    )
    return path


def wait_for_running(
    proc: subprocess.Popen,
    storage: str | optuna.storages.BaseStorage,
    study: str,
    ready: Callable[[list[FrozenTrial]], bool],
    *,
    timeout: float,
    poll: float = 0.05,
) -> list[FrozenTrial] | None:
    """Poll ``study`` while ``proc`` runs until its RUNNING trials satisfy ``ready``, and return
    them; None if the run ended or time ran out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(poll)
        try:
            found = optuna.load_study(study_name=study, storage=storage)
        except KeyError:  # the study is not created yet
            continue
        running = found.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if ready(running):
            return running
    return None


def signal_mid_trial(
    proc: subprocess.Popen,
    url: str,
    study: str,
    sig: signal.Signals,
    *,
    timeout: float,
    min_number: int = 0,
    max_reported: int | None = None,
    poll: float = 0.05,
) -> int | None:
    """Send ``sig`` to ``proc`` as soon as a trial numbered ``min_number`` or more is running with
    at least one epoch reported (mid-trial), and at most ``max_reported``: a trial seen at its
    last epoch may be past it, the run ending, by the time the signal lands. Its number, or None
    if none was seen in time."""

    def mid(t: FrozenTrial) -> bool:
        reported = len(t.intermediate_values)
        return t.number >= min_number and 1 <= reported <= (max_reported or reported)

    running = wait_for_running(
        proc, url, study, lambda trials: any(mid(t) for t in trials), timeout=timeout, poll=poll
    )
    if running is None:
        return None
    proc.send_signal(sig)
    return next(t.number for t in running if mid(t))
