"""What a result was computed with: library versions, the code and the hardware, stored beside
every result."""

from __future__ import annotations

import ast
import importlib.util
import platform
import subprocess
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

import torch

from hpo.device import cpu_model

SOURCE = Path(__file__).resolve().parent  # the hpo package that is running


@cache
def library_versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    # cmaes and scipy: what the cmaes and qmc samplers draw depends on them.
    libraries = ("hpo", "optuna", "numpy", "pandas", "plotly", "cmaes", "scipy")
    out.update({dist: _installed(dist) for dist in libraries})
    # The module's version, not the distribution's: only it keeps the local build tag
    # ("2.14.1+cu130"), and a CUDA build and a CPU one of a release compute differently.
    out["torch"] = str(torch.__version__)
    out["torch_cuda"] = torch.version.cuda or "none"
    out["torchvision"] = torchvision_version()
    # The version is a constant between releases: the commit says which code ran.
    out["hpo_commit"] = source_commit()
    out["cpu"] = f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"
    return out


def torchvision_version() -> str:
    """torchvision's version with its build tag ("0.29.1+cu130"), which its distribution's metadata
    lacks ("0.29.1"). Read from the literal in torchvision/version.py rather than by importing the
    package: the import costs 0.8 s, and the default data path never needs torchvision."""
    loaded = sys.modules.get("torchvision")
    if loaded is not None:
        return str(loaded.__version__)
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        try:
            tree = ast.parse((Path(folder) / "version.py").read_text())
        except (OSError, SyntaxError, ValueError):
            continue
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["__version__"]
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                return node.value.value
    return _installed("torchvision")


def _installed(dist: str) -> str:
    """A distribution's version from its metadata; "absent" where it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def source_commit() -> str:
    """The git commit of the running package's checkout, with "+changes" where its files differ
    from it; "unknown" outside a git checkout (an installed wheel) or without git."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-C", str(SOURCE), *args], capture_output=True, text=True, timeout=10
        )
        if done.returncode != 0:
            raise OSError(done.stderr.strip())
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if changed else "")
