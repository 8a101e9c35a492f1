"""What a result was computed with: library versions, the code and the hardware, stored beside
every result."""

from __future__ import annotations

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
    for dist in ("hpo", "torchvision", "optuna", "numpy", "pandas", "plotly"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    # The module's version, not the distribution's: only it keeps the local build tag
    # ("2.14.1+cu130"), and a CUDA build and a CPU one of a release compute differently.
    out["torch"] = str(torch.__version__)
    out["torch_cuda"] = torch.version.cuda or "none"
    # The version is a constant between releases: the commit says which code ran.
    out["hpo_commit"] = source_commit()
    out["cpu"] = f"{cpu_model()} ({torch.backends.cpu.get_cpu_capability()})"
    return out


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
