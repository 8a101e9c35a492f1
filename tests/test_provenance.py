"""Every result names the code and the CPU it came from, not only the package's version (a
constant between releases)."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import cmaes
import numpy
import optuna
import pytest
import scipy
import torch
import torchvision

import hpo.provenance
from hpo.provenance import cpu_model, library_versions, source_commit

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="no git")
def test_the_commit_of_the_running_checkout_is_recorded_with_its_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert source_commit() in (head, f"{head}+changes")
    # A checkout of its own: clean, then with a changed file.
    package = tmp_path / "checkout" / "hpo"
    package.mkdir(parents=True)
    (package / "x.py").write_text("a = 1\n")
    git = ["git", "-C", str(package.parent), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    commit = subprocess.run(
        [*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    monkeypatch.setattr(hpo.provenance, "SOURCE", package)
    assert source_commit() == commit
    (package / "x.py").write_text("a = 2\n")
    assert source_commit() == f"{commit}+changes"
    monkeypatch.setattr(hpo.provenance, "SOURCE", tmp_path)  # not a checkout: an installed wheel
    assert source_commit() == "unknown"


def test_the_cpu_is_named_by_its_model() -> None:
    model = cpu_model()
    assert model and model == model.strip()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        assert f": {model}" in cpuinfo.read_text()


def test_the_versions_recorded_are_those_of_the_libraries_running() -> None:
    versions = library_versions()
    # torch's and torchvision's with their build tags ("+cu130"); a CUDA build and a CPU one
    # of a release compute differently.
    assert versions["torch"] == str(torch.__version__)
    assert versions["torch_cuda"] == (torch.version.cuda or "none")
    assert versions["torchvision"] == torchvision.__version__
    assert versions["optuna"] == optuna.__version__
    assert versions["numpy"] == numpy.__version__
    assert versions["cmaes"] == cmaes.__version__ and versions["scipy"] == scipy.__version__
    assert versions["python"] == platform.python_version()


def test_a_cpu_build_of_torch_records_no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch, "__version__", "2.14.1+cpu")
    library_versions.cache_clear()
    try:
        versions = library_versions()
        assert (versions["torch"], versions["torch_cuda"]) == ("2.14.1+cpu", "none")
    finally:
        library_versions.cache_clear()


def test_torchvision_version_is_read_with_its_build_tag_without_importing_it() -> None:
    # A fresh interpreter: torchvision's import costs 0.8 s that the default data path never
    # needs, so recording its version must not pay it.
    code = (
        "import sys; from hpo.provenance import torchvision_version as v; "
        "print(v()); print('torchvision' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == [torchvision.__version__, "False"]


def test_torchvision_version_falls_back_to_the_metadata_without_a_version_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "torchvision")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    assert hpo.provenance.torchvision_version() == importlib.metadata.version("torchvision")
    (fake / "version.py").write_text("__version__ = '9.9.9+cpu'\ngit_version = 'x'\n")
    assert hpo.provenance.torchvision_version() == "9.9.9+cpu"
