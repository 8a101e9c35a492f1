"""Device resolution: auto picks what exists; an absent device is an error, never a CPU run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.cli import main
from hpo.device import DeviceError, resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_picks_an_accelerator_only_when_present() -> None:
    expected = (
        "cuda"
        if torch.cuda.is_available()
        else ("mps" if torch.backends.mps.is_available() else "cpu")
    )
    assert resolve_device("auto").type == expected


@no_cuda
def test_asking_for_an_absent_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU") as err:
        resolve_device("cuda")
    assert "--device cpu" in str(err.value)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda:1")


def test_an_out_of_range_gpu_index_or_unknown_device_is_refused() -> None:
    with pytest.raises(DeviceError):
        resolve_device(f"cuda:{torch.cuda.device_count() + 3}")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("tpu")


@no_cuda
def test_mps_is_refused_where_there_is_none() -> None:
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(DeviceError, match="MPS"):
        resolve_device("mps")


@no_cuda
def test_the_cli_exits_1_and_trains_nothing_without_the_gpu_it_was_asked_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "baseline"
    code = main(["baseline", "--device", "cuda", "--out", str(out)])
    assert code == 1
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
