"""optuna-dashboard serves a study that `hpo run` wrote: started on loopback, found over HTTP."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch

from hpo.mnist import Mnist
from hpo.progress import Progress
from hpo.search import run_study
from hpo.spec_parse import parse_spec
from hpo.storage import open_storage
from tests.support.synthetic import make_synthetic_mnist

SPACE = {
    "lr": {"low": 1e-3, "high": 0.1, "log": True},
    "hidden1": {"low": 8, "high": 16},
    "hidden2": 8,
    "head": "logits",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.skipif(shutil.which("optuna-dashboard") is None, reason="optuna-dashboard absent")
def test_optuna_dashboard_serves_the_study_and_its_trials(tmp_path: Path) -> None:
    arrays = make_synthetic_mnist(tmp_path / "mnist", 700, 100, seed=0)
    mnist = Mnist(tmp_path / "mnist", arrays, val_size=200)
    spec = parse_spec({"epochs": 2, "pruner": {"name": "none"}, "space": SPACE})
    url = f"sqlite:///{tmp_path}/x.db"
    storage = open_storage(url)
    run_study(
        spec,
        storage,
        "dash",
        2,
        torch.device("cpu"),
        mnist,
        Progress(),
        runs_dir=None,
        compile=False,
    )

    port = free_port()
    server = subprocess.Popen(
        ["optuna-dashboard", url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        studies, deadline = None, time.monotonic() + 30
        while studies is None and time.monotonic() < deadline and server.poll() is None:
            try:
                studies = get_json(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.3)
        assert studies is not None, f"dashboard did not come up: {server.stderr!r}"
        names = {s["study_name"]: s["study_id"] for s in studies}
        assert "dash" in names
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{names['dash']}")
        trials = detail["trials"]
        stored = optuna.load_study(study_name="dash", storage=url).trials
        assert [(t["number"], t["state"]) for t in trials] == [(0, "Complete"), (1, "Complete")]
        assert [t["values"] for t in trials] == [[s.value] for s in stored]
        for shown, t in zip(trials, stored, strict=True):  # the curves the report draws
            assert [v["value"] for v in shown["intermediate_values"]] == t.user_attrs["curves"][
                "val_acc"
            ]
            attrs = {a["key"]: a["value"] for a in shown["user_attrs"]}
            assert json.loads(attrs["config"]) == t.user_attrs["config"]
            assert attrs["is_baseline"] == str(t.number == 0)
    finally:
        server.terminate()
        server.wait(timeout=10)
