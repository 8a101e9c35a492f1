"""Benchmark fixtures and the side-by-side ratios that every run reports.

``pytest benchmarks/`` times each variant; at the end the ratios between variants measured in
this same run are printed and stored in the pytest-benchmark JSON (``--benchmark-json``) under
``hpo_ratios``. With ``--benchmark-disable`` (CI's smoke) each benchmark runs once, shortened.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hpo.device import describe
from hpo.mnist import Mnist
from hpo.provenance import library_versions

# (name, numerator benchmark, denominator benchmark): "numerator takes N x the time of denominator"
RATIOS = (
    (
        "epoch speed-up, tensor vs torchvision (cpu)",
        "test_one_epoch[cpu-torchvision]",
        "test_one_epoch[cpu-tensor]",
    ),
)


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    return Mnist.load()


@pytest.fixture
def smoke(request: pytest.FixtureRequest) -> bool:
    """True when timing is off (CI's one-round smoke): benchmarks then do the least real work."""
    return bool(request.config.getoption("benchmark_disable", False))


def devices() -> list[str]:
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        found.append("mps")
    return found


def _ratios(benchmarks: list[Any]) -> list[dict[str, Any]]:
    medians = {b.name: b.stats.median for b in benchmarks if getattr(b, "stats", None)}
    out = []
    for label, slow, fast in RATIOS:
        if slow in medians and fast in medians and medians[fast] > 0:
            out.append(
                {"label": label, "slow": slow, "fast": fast, "ratio": medians[slow] / medians[fast]}
            )
    return out


def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: dict) -> None:
    session = config._benchmarksession
    output_json["hpo_ratios"] = _ratios(session.benchmarks)
    output_json["hpo_machine"] = {
        "device": describe(torch.device("cpu")),
        "versions": library_versions(),
    }


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return
    for r in _ratios(session.benchmarks):
        terminalreporter.write_line(f"hpo ratio: {r['label']}: {r['ratio']:.2f}x")
