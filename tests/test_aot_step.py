"""The CPU step compiled ahead of time: same results as torch.compile's, one package per key,
built once however many processes ask, and never a half-written one."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import hpo.aot_step
import hpo.step_compile
import hpo.train
from hpo.aot_step import FAILED_ENV, load_step, package_key, prepare
from hpo.config import Precision, TrainConfig
from hpo.fast_step import FlatState
from hpo.mnist import Mnist
from hpo.model import build_model
from hpo.step_compile import ahead_of_time, compiled_step
from hpo.train import StepKind, fit
from hpo.workers import worker_env

SMALL = TrainConfig(hidden1=48, hidden2=24, epochs=2, batch_size=64)


def _steps(step, hidden: tuple[int, int], softmax: bool) -> list[torch.Tensor]:
    """30 steps (the last one a short batch) from one seeded start; every tensor they update."""
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(700, 784, generator=g), torch.randint(0, 10, (700,), generator=g)
    torch.manual_seed(5)
    config = TrainConfig(hidden1=hidden[0], hidden2=hidden[1])
    state = FlatState.from_module(build_model(config), torch.device("cpu"))
    totals = torch.zeros(3, dtype=torch.float64)
    lr, momentum, head = torch.tensor(0.05), torch.tensor(0.8), torch.tensor(softmax)
    for i in range(30):
        idx = torch.randint(0, 700, (64 if i < 29 else 13,), generator=g)
        step(x, y, idx, state.params, state.bufs, state.running, totals, lr, momentum, head)
    return [*state.params, *state.bufs, *state.running, totals]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize(("hidden", "softmax"), [((300, 100), False), ((37, 90), True)])
def test_the_packaged_step_computes_exactly_what_torch_compile_computes(
    hidden: tuple[int, int], softmax: bool, precision: Precision
) -> None:
    packaged, _ = load_step(precision)
    ahead = _steps(packaged, hidden, softmax)
    jit = _steps(compiled_step(torch.device("cpu"), precision), hidden, softmax)
    assert ahead[-1][2] == 30  # every step ran and counted
    for a, b in zip(ahead, jit, strict=True):
        assert torch.equal(a, b)  # the same inductor kernels, to the bit
    if precision == "bf16":  # and not the fp32 package's: the matmuls lost bits
        fp32 = _steps(load_step("fp32")[0], hidden, softmax)
        assert not torch.equal(ahead[0], fp32[0])
        torch.testing.assert_close(ahead[0], fp32[0], rtol=0.05, atol=0.01)


def test_fit_trains_with_the_package_on_cpu_and_records_it(synthetic_mnist: Mnist) -> None:
    config = SMALL
    cpu = torch.device("cpu")
    heard: list[object] = []
    ahead = fit(config, synthetic_mnist, cpu, heard.append, on_prepared=heard.append)
    assert ahead.step.compiled and ahead.step.aot
    assert ahead.to_dict()["aot"] is True
    # the step's kind first, once, then the epochs
    assert heard[0] == StepKind(compiled=True, aot=True, graphed=False)
    assert heard[1:] == list(ahead.epochs)
    eager = fit(config, synthetic_mnist, cpu, compile=False)
    assert not eager.step.aot and not eager.step.compiled
    for a, b in zip(ahead.epochs, eager.epochs, strict=True):
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.eval_acc == pytest.approx(b.eval_acc, abs=1 / 100)


def test_fit_falls_back_to_torch_compile_when_the_package_cannot_be_had(
    synthetic_mnist: Mnist, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_compiler(precision: str) -> None:
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(hpo.step_compile, "load_step", no_compiler)
    monkeypatch.setattr(hpo.step_compile, "_WARNED", set())
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler.*using torch.compile") as said:
        result = fit(SMALL, synthetic_mnist, torch.device("cpu"))
        fit(SMALL, synthetic_mnist, torch.device("cpu"))
    assert len(said) == 1  # once per process, not once per trial
    assert result.step.compiled and not result.step.aot
    # A one-unit layer is below the package's smallest dimension: torch.compile trains it.
    monkeypatch.undo()
    one = fit(dataclasses.replace(SMALL, hidden2=1), synthetic_mnist, torch.device("cpu"))
    assert one.step.compiled and not one.step.aot


def test_each_precision_has_its_own_package() -> None:
    assert package_key("bf16") != package_key("fp32") == package_key()


def test_layers_of_two_units_or_more_take_the_package_and_one_unit_or_a_gpu_do_not() -> None:
    # The package is exported with every dimension >= MIN_SIZE (2): a two-unit layer is inside
    # it, and only a one-unit layer (or another device) falls back to torch.compile.
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert hpo.aot_step.MIN_SIZE == 2
    assert ahead_of_time(cpu, dataclasses.replace(SMALL, hidden1=2, hidden2=2))
    assert not ahead_of_time(cpu, dataclasses.replace(SMALL, hidden1=1))
    assert not ahead_of_time(cpu, dataclasses.replace(SMALL, hidden2=1))
    assert not ahead_of_time(cuda, SMALL)


def test_the_key_changes_with_the_thread_count_inductor_bakes_in() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = package_key()
        torch.set_num_threads(2)
        assert package_key() != one
    finally:
        torch.set_num_threads(before)
    assert package_key() == package_key()


def test_a_failed_build_leaves_no_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def killed_halfway(exported: object, package_path: str) -> None:
        Path(package_path).write_bytes(b"half a package")
        raise KeyboardInterrupt

    monkeypatch.setattr(hpo.aot_step, "aot_dir", lambda: tmp_path)
    monkeypatch.setattr(hpo.aot_step, "_LOADED", {})
    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", killed_halfway)
    # What a build killed by SIGKILL leaves (no finally runs): the next build clears it.
    stale = tmp_path / f".building-train_step-{package_key()}-x.pt2"
    stale.write_bytes(b"an older half")
    with pytest.raises(KeyboardInterrupt):
        load_step()
    assert not list(tmp_path.glob("*.pt2"))  # no package, no partial file, old or new


_BUILD = """
import json, sys, torch
torch.set_num_threads(1)
from hpo.aot_step import load_step
step, built = load_step()
print(json.dumps({"built": built}))
"""


def test_processes_that_start_together_build_the_package_once(tmp_path: Path) -> None:
    # --jobs workers on a fresh machine all want the same package at once; one builds it while
    # the others wait for it, rather than each building its own.
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), "HPO_DATA_DIR": str(tmp_path / "d")}
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    built = sorted(json.loads(out.strip().splitlines()[-1])["built"] for out in outs)
    assert built == [False, True]
    assert len(list((tmp_path / "hpo" / "aot").glob("*.pt2"))) == 1


def test_prepare_builds_a_missing_package_for_the_workers_threads_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hpo.aot_step, "aot_dir", lambda: tmp_path)
    built_with: list[tuple[int, str]] = []

    def build(precision: Precision) -> tuple[None, bool]:
        built_with.append((torch.get_num_threads(), precision))
        hpo.aot_step.package_path(precision).write_bytes(b"a package")
        return None, True

    monkeypatch.setattr(hpo.aot_step, "load_step", build)
    before = torch.get_num_threads()
    said: list[str] = []
    prepare(1, said.append, "bf16")  # the parent of one-thread --jobs workers of a bf16 study
    assert built_with == [(1, "bf16")] and torch.get_num_threads() == before
    assert len(said) == 1 and "bf16" in said[0] and "once" in said[0] and str(tmp_path) in said[0]
    prepare(1, said.append, "bf16")  # there now: nothing to build, nothing to say
    assert built_with == [(1, "bf16")] and len(said) == 1
    prepare(1, said.append)  # the fp32 one is another package
    assert built_with[-1] == (1, "fp32") and len(said) == 2


def test_prepare_leaves_a_failure_to_the_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_source(precision: str) -> str:
        raise OSError("could not get source code")  # hpo installed without its .py files

    monkeypatch.setattr(hpo.aot_step, "package_key", no_source)
    before = torch.get_num_threads()
    said: list[str] = []
    handed = prepare(1, said.append)  # nothing raised: fit falls back to torch.compile
    assert torch.get_num_threads() == before and handed == {}  # no key to hand to workers
    assert said == [
        "no CPU step package (OSError: could not get source code); trials use torch.compile"
    ]


@pytest.fixture
def good_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This machine's real package, for a fake ``_build`` to copy; packages then go to an empty
    ``tmp_path``, with nothing loaded or failed yet in this process."""
    good = hpo.aot_step.package_path()
    load_step()
    monkeypatch.setattr(hpo.aot_step, "aot_dir", lambda: tmp_path)
    monkeypatch.setattr(hpo.aot_step, "_LOADED", {})
    monkeypatch.setattr(hpo.aot_step, "_FAILED", {})
    monkeypatch.setenv(FAILED_ENV, "")  # nor inherited from a parent
    return good


def test_workers_inherit_their_parents_failed_build_and_do_not_try_again(
    good_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[int] = []

    def no_compiler(path: Path, precision: str) -> None:
        builds.append(torch.get_num_threads())
        raise RuntimeError("no C++ compiler\nsee the log")

    monkeypatch.setattr(hpo.aot_step, "_build", no_compiler)
    said: list[str] = []
    handed = prepare(1, said.append)  # the --jobs parent, for one-thread workers
    assert builds == [1] and said[-1].startswith("no CPU step package (RuntimeError: no C++")
    assert worker_env("sqlite://", 1, handed)[FAILED_ENV] == handed[FAILED_ENV]
    # A worker: a new process (nothing failed in it yet), one thread, the parent's environment.
    monkeypatch.setattr(hpo.aot_step, "_FAILED", {})
    monkeypatch.setenv(FAILED_ENV, handed[FAILED_ENV])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(RuntimeError, match="could not be built: RuntimeError: no C"):
            load_step()
        assert builds == [1]  # not tried again
    finally:
        torch.set_num_threads(before)
    if before != 1:  # another thread count is another package: that one is still tried
        with pytest.raises(RuntimeError, match="no C"):
            load_step()
        assert builds == [1, before]


def test_a_damaged_package_is_built_again_and_a_failed_build_is_not_retried(
    good_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = good_package
    builds: list[Path] = []

    def build(path: Path, precision: str) -> None:
        builds.append(path)
        path.write_bytes(good.read_bytes())

    monkeypatch.setattr(hpo.aot_step, "_build", build)
    damaged = hpo.aot_step.package_path()
    damaged.write_bytes(b"not a zip archive")
    step, built = load_step()
    assert built and builds == [damaged]
    assert _steps(step, (48, 24), False)[-1][2] == 30  # the rebuilt package trains

    def no_compiler(path: Path, precision: str) -> None:
        builds.append(path)
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(hpo.aot_step, "_build", no_compiler)
    monkeypatch.setattr(hpo.aot_step, "_LOADED", {})
    damaged.unlink()
    for _ in range(3):  # every trial of the process asks; only the first tries
        with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
            load_step()
    assert len(builds) == 2


def test_workers_that_find_the_package_damaged_together_rebuild_it_once(
    good_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another worker rebuilt it while this one waited for the lock: load that, build nothing."""
    builds: list[Path] = []
    monkeypatch.setattr(hpo.aot_step, "_build", lambda path, precision: builds.append(path))
    damaged = hpo.aot_step.package_path()
    damaged.write_bytes(b"not a zip archive")
    real_lock = hpo.aot_step.exclusive_lock

    @contextlib.contextmanager
    def rebuilt_by_another_worker_meanwhile(path: Path) -> Iterator[None]:
        with real_lock(path):
            damaged.write_bytes(good_package.read_bytes())
            yield

    monkeypatch.setattr(hpo.aot_step, "exclusive_lock", rebuilt_by_another_worker_meanwhile)
    step, built = load_step()
    assert not built and builds == []
    assert _steps(step, (48, 24), False)[-1][2] == 30  # the other worker's package trains


def test_a_build_removes_packages_unused_for_a_month_and_a_load_marks_its_own_used(
    tmp_path: Path, good_package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = good_package.read_bytes()
    monkeypatch.setattr(hpo.aot_step, "_build", lambda path, precision: path.write_bytes(copy))
    day = 86_400
    stale, recent, other = (tmp_path / f"{n}.pt2" for n in ("train_step-a", "train_step-b", "x"))
    old_lock = tmp_path / "train_step-a.lock"  # an earlier version's per-key lock
    for path, age in (
        (stale, 31 * day),
        (recent, 29 * day),
        (other, 400 * day),
        (old_lock, 31 * day),
    ):
        path.write_bytes(b"a package")
        os.utime(path, (time.time() - age,) * 2)
    _, built = load_step()
    assert built
    assert not stale.exists() and not old_lock.exists()
    assert recent.exists()  # another torch's, left until unused
    assert other.exists()  # not a package of ours
    ours = hpo.aot_step.package_path()
    os.utime(ours, (time.time() - 40 * day,) * 2)
    monkeypatch.setattr(hpo.aot_step, "_LOADED", {})
    _, built = load_step()  # a later process loads it: now its last use
    assert not built and time.time() - ours.stat().st_mtime < day
