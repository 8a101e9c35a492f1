"""Device resolution: auto picks what exists; an absent device is an error, never a CPU run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import hpo.device
from hpo.cli import main
from hpo.device import DeviceError, resolve_device, resolve_precision, slow_bf16_note

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")


def test_cpu_is_always_there() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_picks_cuda_then_mps_then_the_cpu(
    monkeypatch: pytest.MonkeyPatch, cuda: bool, mps: bool, expected: str
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)
    assert resolve_device("auto") == torch.device(expected)


@no_cuda
def test_asking_for_an_absent_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match="no CUDA GPU") as err:
        resolve_device("cuda")
    assert "--device cpu" in str(err.value)
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda:1")


def test_an_out_of_range_gpu_index_or_unknown_device_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two GPUs, as PyTorch would see them: the index is checked, not the absence of CUDA.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    said = r"--device cuda:2 was asked for, but only 2 CUDA device\(s\) exist \(cuda:0..cuda:1\)"
    with pytest.raises(DeviceError, match=said):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # the last one there is
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(DeviceError, match="unsupported device 'meta'"):
        resolve_device("meta")


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


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_on_a_cpu_with_bfloat16_units(
    monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    # A GPU trains these networks bound by kernel launches: nothing to gain, fp32.
    assert resolve_precision("auto", torch.device("cuda")) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16" and resolve_precision("fp32", cpu) == "fp32"
    note = slow_bf16_note(cpu, "bf16")
    if native:
        assert note is None
    else:
        assert note is not None and "neither AVX512-BF16 nor AMX" in note
        assert "--precision auto" in note
    assert slow_bf16_note(cpu, "fp32") is None and slow_bf16_note(cpu, "auto") is None


@pytest.mark.parametrize(("capability", "slow"), [((7, 5), True), ((8, 0), False), ((9, 0), False)])
def test_explicit_bf16_is_said_slow_on_a_gpu_only_before_ampere(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], slow: bool
) -> None:
    # Ampere (8.0, the A100) is the first with bfloat16 tensor cores: no note there.
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "Tesla T4")
    note = slow_bf16_note(torch.device("cuda", 0), "bf16")
    if slow:
        assert note == (
            "precision bf16: Tesla T4 predates bfloat16 tensor cores (Ampere), so its matmuls "
            "are emulated, several times slower than fp32; use --precision auto"
        )
    else:
        assert note is None
    # MPS is not known to gain or lose: nothing said either way.
    assert slow_bf16_note(torch.device("mps"), "bf16") is None


def test_usable_cpus_are_this_processs_share_not_the_machines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In a container or under taskset, 3 of 64 CPUs: threads split 64 ways would crowd 3.
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 5, 9}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert hpo.device.usable_cpus() == 3
    monkeypatch.delattr(os, "sched_getaffinity")  # macOS, Windows: the machine's count
    assert hpo.device.usable_cpus() == 64


def test_a_cpu_is_described_by_its_model_name_and_thread_count(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What a trial's ``device_name`` and the report's device column show (was the bare
    architecture, ``CPU x86_64``, for every x86 machine)."""
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some Vendor CPU 9000\nflags\t: avx\n")
    real = Path

    def fake_path(name: str) -> Path:
        return info if name == "/proc/cpuinfo" else real(name)

    monkeypatch.setattr(hpo.device, "Path", fake_path)
    assert hpo.device.describe(torch.device("cpu")) == (
        f"Some Vendor CPU 9000 x{torch.get_num_threads()} threads"
    )
