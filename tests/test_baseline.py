"""``hpo baseline``: the tutorial's run on real MNIST and every artefact it writes."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
from pathlib import Path
from typing import Any

import matplotlib.image
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import hpo.baseline
import hpo.cli.baseline
import hpo.tutorial_figures
from hpo.baseline import MARK, OUTPUTS, PARTIAL, tutorial_line
from hpo.cli import main
from hpo.config import TrainConfig
from hpo.mnist import Mnist
from hpo.train import EpochMetrics, FitResult, OnEpoch
from hpo.tutorial_figures import save_digits, save_loss_curve


def test_the_tutorial_line_has_the_tutorials_fields() -> None:
    m = EpochMetrics(3, 0.009, 1.5, 0.97, 1.49, 0.975, 1.0, 0.1)
    assert tutorial_line(m) == (
        "Epoch: 3, Train Loss: 1.5000, Train Acc: 0.9700, Test Loss: 1.4900, Test Acc: 0.9750"
    )


def test_the_tutorials_pictures_title_six_digits_and_plot_the_loss_per_epoch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[Any] = []

    class Kept(hpo.tutorial_figures.Figure):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            drawn.append(self)

    monkeypatch.setattr(hpo.tutorial_figures, "Figure", Kept)
    labels = torch.tensor([7, 2, 1, 0, 4, 1, 4, 9])
    save_digits(torch.zeros(8, 28, 28), labels, tmp_path / "digits.png")
    # The first six, in a 2x3 grid, titled as the tutorial titles them.
    assert [ax.get_title() for ax in drawn[0].axes] == [
        f"Ground Truth: {n}" for n in (7, 2, 1, 0, 4, 1)
    ]
    assert all(not ax.get_xticks().size and not ax.get_yticks().size for ax in drawn[0].axes)
    save_loss_curve([1.6, 1.5, 1.48], tmp_path / "loss.png")
    (ax,) = drawn[1].axes
    (line,) = ax.get_lines()
    # As the tutorial's plt.plot(losses): epochs counted from 0 on the x axis.
    assert (list(line.get_xdata()), list(line.get_ydata())) == ([0, 1, 2], [1.6, 1.5, 1.48])
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("Train Loss", "Epoch", "Loss")
    assert line.get_label() == "Train Loss"
    assert matplotlib.image.imread(tmp_path / "loss.png").shape[:2] == (400, 600)


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


def test_baseline_refuses_an_out_that_is_a_file_before_loading_data(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (taken := tmp_path / "best.pt").write_bytes(b"a model")
    argv = ["baseline", "--device", "cpu", "--data-dir", str(tmp_path / "no-data")]
    assert main([*argv, "--out", str(taken)]) == 2
    assert f"--out {taken} is a file; it names the folder" in capsys.readouterr().err
    assert taken.read_bytes() == b"a model" and not (tmp_path / "no-data").exists()
    assert main([*argv, "--seed", str(2**64), "--out", str(tmp_path / "b")]) == 2  # torch's
    assert (
        "--seed must be an integer in [0, 4294967295] (got 18446744073709551616)"
        in capsys.readouterr().err
    )
    # An empty --out would be the current folder: its files would land among the user's own.
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error
        main([*argv, "--out", ""])
    assert exit_.value.code == 2 and "--out: a path must not be empty" in capsys.readouterr().err


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
    assert record["versions"]["torch"] == str(torch.__version__)  # the one that ran, its build too
    assert record["final_test_acc"] == final

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    for tag in ("train/loss", "train/acc", "test/loss", "test/acc", "lr"):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == list(range(20)), tag  # one point per epoch
    assert events.Scalars("test/acc")[-1].value == pytest.approx(final, abs=1e-6)

    for name in ("digits.png", "train_loss.png"):
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.std() > 0.05


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.mnist
def test_a_rerun_replaces_the_earlier_runs_tensorboard_curves(tmp_path: Path) -> None:
    out = tmp_path / "baseline"
    for _ in range(2):
        assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert [s.step for s in events.Scalars("test/acc")] == [0]  # one run's point, not two
    assert len(list((out / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert sorted(p.name for p in out.iterdir()) == sorted([*OUTPUTS, "tensorboard"])


@pytest.mark.mnist
def test_an_interrupted_rerun_leaves_the_previous_run_byte_for_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "baseline"
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 0
    before = files_under(out)
    assert set(OUTPUTS) < set(before) and any(name.startswith("tensorboard/") for name in before)
    seen: list[dict[str, bytes]] = []
    fit = hpo.baseline.fit

    def stopped_after_one_epoch(
        config: TrainConfig,
        mnist: Mnist,
        device: torch.device,
        on_epoch: OnEpoch | None = None,
        **kwargs: Any,
    ) -> FitResult:
        def record(m: EpochMetrics) -> None:
            assert on_epoch is not None
            on_epoch(m)  # the new run's epoch is in its TensorBoard curves, then Ctrl-C
            seen.append(files_under(out))
            raise KeyboardInterrupt

        return fit(config, mnist, device, record, **kwargs)

    monkeypatch.setattr(hpo.baseline, "fit", stopped_after_one_epoch)
    assert main(["baseline", "--device", "cpu", "--epochs", "20", "--out", str(out)]) == 130
    # While it trained, the new run wrote beside the previous one, not over it ...
    (during,) = seen
    assert {k: v for k, v in during.items() if not k.startswith(f"{PARTIAL}/")} == before
    assert any(k.startswith(f"{PARTIAL}/tensorboard/events.out.tfevents.") for k in during)
    # ... and cut short, it leaves the previous run exactly as it was, and nothing of its own.
    assert files_under(out) == before
    assert not (out / PARTIAL).exists()
    err = capsys.readouterr().err
    assert "the previous complete run in its folder, if any, is as it was" in err


def _interrupted(*args: object, **kwargs: object) -> None:
    raise KeyboardInterrupt  # Ctrl-C as fit starts


def test_the_metrics_csv_holds_each_epochs_figures_under_their_own_columns(
    synthetic_mnist: Mnist, tmp_path: Path
) -> None:
    """The file a user plots from: a swapped column (test loss under test_acc) read as
    plausible numbers; only the 20-epoch real-MNIST run checked it before."""
    config = TrainConfig(epochs=2, hidden1=16, hidden2=8, head="logits", batch_size=500)
    run = hpo.baseline.run_baseline(synthetic_mnist, torch.device("cpu"), tmp_path, config)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    names = {"test_loss": "eval_loss", "test_acc": "eval_acc"}
    assert [{k: float(v) for k, v in row.items()} for row in rows] == [
        {column: float(getattr(e, names.get(column, column))) for column in rows[0]}
        for e in run.result.epochs
    ]
    assert list(rows[0]) == [
        "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "train_seconds",
        "eval_seconds",
    ]  # fmt: skip


def test_a_diverged_baselines_record_is_strict_json(synthetic_mnist: Mnist, tmp_path: Path) -> None:
    # JSON has no NaN: Python's json writes it all the same, and other parsers reject the file.
    config = TrainConfig(
        lr=1e36, momentum=0.99, schedule="none", head="logits", epochs=3, hidden1=16, hidden2=8
    )
    run = hpo.baseline.run_baseline(synthetic_mnist, torch.device("cpu"), tmp_path, config)
    assert run.result.status == "diverged"
    record = json.loads(
        (tmp_path / "metrics.json").read_text(),
        parse_constant=lambda c: pytest.fail(f"{c} in metrics.json"),
    )
    assert record["epochs"][-1]["train_loss"] is None


def test_an_interrupted_baseline_keeps_the_previous_run_and_nothing_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hpo.baseline, "fit", _interrupted)
    out = tmp_path / "baseline"
    (out / "tensorboard").mkdir(parents=True)
    (out / "metrics.csv").write_text("an earlier run's\n")
    (out / "tensorboard" / "events.out.tfevents.1.earlier").write_bytes(b"its curves")
    before = files_under(out)
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "interrupted; the baseline run was cut short and is not kept" in err
    assert "everything finished so far is stored" not in err  # `hpo run`'s words, not true here
    assert files_under(out) == before and not (out / PARTIAL).exists()
    # A first run, cut short, leaves no folder behind, nor the folders it made above its own.
    first = tmp_path / "new" / "first"
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(first)]) == 130
    assert not (tmp_path / "new").exists()


@pytest.mark.mnist
def test_ctrl_c_after_the_run_is_stored_says_it_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c_at_the_summary(message: str) -> None:
        if message.startswith("train time"):
            raise KeyboardInterrupt

    monkeypatch.setattr(hpo.cli.baseline, "log", ctrl_c_at_the_summary)
    out = tmp_path / "baseline"
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; the baseline run is complete and stored in {out}" in err
    assert "not kept" not in err and all((out / name).is_file() for name in OUTPUTS)


def test_a_second_baseline_into_a_folder_in_use_is_refused_and_takes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hpo.baseline, "fit", _interrupted)  # it must not get as far as training
    out = tmp_path / "baseline"
    (out / PARTIAL).mkdir(parents=True)
    (out / PARTIAL / MARK).touch()
    (out / PARTIAL / "metrics.csv").write_text("the first run's, in progress\n")
    before = files_under(out)
    first = os.open(out, os.O_RDONLY)  # the first run's hold on the folder
    try:
        fcntl.flock(first, fcntl.LOCK_EX)
        assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 1
    finally:
        os.close(first)
    err = capsys.readouterr().err
    assert f"another hpo baseline is writing into {out} now" in err and "--out" in err
    assert files_under(out) == before  # the first run's partial/ is untouched
    # With the first run gone (its lock went with it), its leftover is cleared as before.
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 130
    assert not (out / PARTIAL).exists()


def test_a_partial_folder_left_by_a_killed_run_is_removed_and_anyone_elses_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hpo.baseline, "fit", _interrupted)
    out = tmp_path / "baseline"
    (out / PARTIAL / "tensorboard").mkdir(parents=True)  # as a SIGKILLed run leaves it
    (out / PARTIAL / MARK).touch()
    (out / PARTIAL / "tensorboard" / "events.out.tfevents.1.killed").write_bytes(b"stale")
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 130
    assert not (out / PARTIAL).exists()
    capsys.readouterr()

    (out / PARTIAL).mkdir()  # a folder of the user's, by chance so named: not ours to delete
    (out / PARTIAL / "notes.txt").write_text("mine")
    assert main(["baseline", "--device", "cpu", "--epochs", "1", "--out", str(out)]) == 1
    assert f"{out / PARTIAL} is in the way" in capsys.readouterr().err
    assert (out / PARTIAL / "notes.txt").read_text() == "mine"


def test_ctrl_c_while_a_complete_run_moves_in_does_not_cut_the_renames_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "baseline"
    for folder, run in ((out, "old"), (out / PARTIAL, "new")):
        (folder / "tensorboard").mkdir(parents=True)
        (folder / "tensorboard" / f"events.out.tfevents.{run}").write_text(run)
        for name in OUTPUTS:
            (folder / name).write_text(run)
    replace = os.replace
    moved: list[str] = []

    def replace_then_ctrl_c(src: Path, dst: Path) -> None:
        replace(src, dst)
        moved.append(Path(dst).name)
        if len(moved) == 1:
            signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt right here

    monkeypatch.setattr(os, "replace", replace_then_ctrl_c)
    try:
        files = hpo.baseline._install(out / PARTIAL, out)
    except KeyboardInterrupt:  # raised here, not left to stop pytest's whole session
        pytest.fail(f"Ctrl-C stopped the renames after {moved}: one run's files beside another's")
    assert moved == ["events.out.tfevents.new", *OUTPUTS]
    assert files == tuple(out / name for name in OUTPUTS)
    assert files_under(out) == {
        "tensorboard/events.out.tfevents.new": b"new",
        **{name: b"new" for name in OUTPUTS},
    }
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Ctrl-C works again
