"""``hpo baseline``: the tutorial's run on real MNIST and every artefact it writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import matplotlib.image
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import hpo.baseline
from hpo.baseline import tutorial_line
from hpo.cli import main
from hpo.train import EpochMetrics


def test_the_tutorial_line_has_the_tutorials_fields() -> None:
    m = EpochMetrics(3, 0.009, 1.5, 0.97, 1.49, 0.975, 1.0, 0.1)
    assert tutorial_line(m) == (
        "Epoch: 3, Train Loss: 1.5000, Train Acc: 0.9700, Test Loss: 1.4900, Test Acc: 0.9750"
    )


def test_baseline_rejects_zero_epochs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["baseline", "--epochs", "0", "--device", "cpu"]) == 2
    assert "--epochs" in capsys.readouterr().err


def test_baseline_refuses_bf16_on_the_tutorials_fp32_loop(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["baseline", "--precision", "bf16", "--loader", "torchvision", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "b")]) == 2
    assert "--precision bf16 needs --loader tensor" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.mnist
@pytest.mark.slow
def test_baseline_reproduces_the_tutorial_on_real_mnist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "baseline"
    assert main(["baseline", "--device", "cpu", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    lines = [line for line in stdout.splitlines() if line.startswith("Epoch: ")]
    assert len(lines) == 20

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(20))
    assert float(rows[0]["lr"]) == pytest.approx(0.009)
    assert float(rows[-1]["lr"]) == pytest.approx(0.006561)
    final = float(rows[-1]["test_acc"])
    assert final >= 0.98, f"the tutorial's recipe measured 98.27%; got {final:.4f}"
    assert f"Test Acc: {final:.4f}" in lines[-1]

    record = json.loads((out / "metrics.json").read_text())
    assert record["eval_split"] == "test" and record["config"]["head"] == "softmax"
    assert record["versions"]["torch"] and record["final_test_acc"] == final

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for tag in ("train/loss", "train/acc", "test/loss", "test/acc", "lr"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == list(range(20)), tag  # one point per epoch
    assert events.Scalars("test/acc")[-1].value == pytest.approx(final, abs=1e-6)

    for name in ("digits.png", "train_loss.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.05


@pytest.mark.mnist
def test_a_rerun_replaces_the_earlier_runs_tensorboard_curves(tmp_path: Path) -> None:
    out = tmp_path / "baseline"
    for _ in range(2):
        assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [s.step for s in events.Scalars("test/acc")] == [0]  # one run's point, not two
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_an_interrupted_baseline_says_it_kept_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.baseline, "fit", interrupted)
    out = tmp_path / "baseline"
    out.mkdir()
    (out / "metrics.csv").write_text("an earlier run's\n")  # not to be shown beside the new one
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the baseline run was cut short and is not kept" in err
    assert "everything finished so far is stored" not in err  # `hpo run`'s words, not true here
    assert not (out / "metrics.csv").exists()
