"""Benchmark fixtures and the side-by-side ratios that every run reports.

``pytest benchmarks/`` times each variant, the variants of a ratio alternating round by round
inside one benchmark (benchmarks/alternate.py); at the end the ratios are printed and stored in
the pytest-benchmark JSON (``--benchmark-json``) under ``hpo_ratios``, each the median of its
per-round ratios. With ``--benchmark-disable`` (CI's smoke) each benchmark runs one round,
shortened.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from hpo.bench_report import ratios, unmatched_names
from hpo.device import describe
from hpo.mnist import Mnist
from hpo.provenance import library_versions


@pytest.fixture(scope="session")
def mnist() -> Mnist:
    return Mnist.load()


@pytest.fixture
def smoke(request: pytest.FixtureRequest) -> bool:
    """True when timing is off (CI's one-round smoke): benchmarks then do the least real work."""
    return bool(request.config.getoption("benchmark_disable", False))


def devices() -> list[Any]:
    """cpu, cuda and mps, those absent here skipped with the reason (the run's log says which
    devices were not measured)."""
    mps = getattr(torch.backends, "mps", None)
    absent = {
        "cuda": None if torch.cuda.is_available() else "no CUDA GPU visible to PyTorch",
        "mps": None if mps is not None and mps.is_available() else "no Apple MPS device",
    }
    return ["cpu"] + [
        pytest.param(name, marks=pytest.mark.skip(reason=why)) if why else name
        for name, why in absent.items()
    ]


def _as_dicts(config: Any) -> list[dict[str, Any]]:
    session = getattr(config, "_benchmarksession", None)
    if session is None:
        return []
    return [b.as_dict(include_data=False) for b in session.benchmarks]


def _accelerator() -> str | None:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return None


def pytest_benchmark_update_json(config: Any, benchmarks: Any, output_json: dict) -> None:
    output_json["hpo_ratios"] = ratios(output_json["benchmarks"])
    output_json["hpo_machine"] = {
        "device": describe(torch.device("cpu")),
        "accelerator": _accelerator(),
        "versions": library_versions(),
    }


# RATIOS names that a benchmark which ran did not time: checked per test, so that a run of some
# benchmarks only (-k, a node id, xdist's share) asks nothing of the others. CI's smoke runs it.
_UNTIMED: list[str] = []


def pytest_runtest_teardown(item: pytest.Item) -> None:
    fixture = getattr(item, "funcargs", {}).get("benchmark")
    if fixture is not None:
        timed = {fixture.name, *fixture.extra_info.get("variants", {})}
        _UNTIMED.extend(unmatched_names(item.name, timed))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _UNTIMED and exitstatus == 0:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write("\n")  # after the progress dots' "[100%]"
            reporter.write_line(
                f"hpo: hpo.bench_report.RATIOS names {', '.join(_UNTIMED)}, which no benchmark "
                "timed: a benchmark or variant was renamed; rename its RATIOS entry too",
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    for r in ratios(_as_dicts(config)):
        spread = (
            f" ({r['low']:.2f}x-{r['high']:.2f}x over {r['rounds']} rounds)"
            if "rounds" in r
            else ""
        )
        terminalreporter.write_line(f"hpo ratio: {r['label']}: {r['ratio']:.2f}x{spread}")
