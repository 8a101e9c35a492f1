"""pytest-benchmark JSON -> a Markdown table with the machine, versions and ratios."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# (label, slower benchmark, faster benchmark): the ratio is slower's median / faster's median,
# both from the same run: timings on these machines drift, ratios measured side by side do not.
RATIOS: tuple[tuple[str, str, str], ...] = (
    *(
        (
            f"one epoch, tensor path vs the tutorial's torchvision loop ({dev})",
            f"test_one_epoch[{dev}-torchvision]",
            f"test_one_epoch[{dev}-tensor]",
        )
        for dev in ("cpu", "cuda", "mps")
    ),
    *(
        (
            f"{kind}: 1000-trial vs 100-trial study, total time (10x = flat per-trial cost)",
            f"test_study_overhead[{kind}-1000]",
            f"test_study_overhead[{kind}-100]",
        )
        for kind in ("in-memory", "sqlite", "postgresql")
    ),
    (
        "study throughput (model-epochs/s), 2 workers vs 1",
        "test_study_jobs[1]",
        "test_study_jobs[2]",
    ),
)


def ratios(benchmarks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every ratio whose two benchmarks are both present."""
    medians = {b["name"]: b["stats"]["median"] for b in benchmarks}
    out = []
    for label, slow, fast in RATIOS:
        if medians.get(slow) and medians.get(fast):
            out.append(
                {"label": label, "slow": slow, "fast": fast, "ratio": medians[slow] / medians[fast]}
            )
    return out


def _seconds(value: float) -> str:
    return f"{value * 1000:.1f} ms" if value < 1 else f"{value:.2f} s"


def markdown(report: Mapping[str, Any]) -> str:
    machine = report.get("machine_info", {})
    hpo_machine = report.get("hpo_machine", {})
    versions = hpo_machine.get("versions", {})
    lines = [
        f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} cores"
        + (
            f"; accelerator: {hpo_machine['accelerator']}"
            if hpo_machine.get("accelerator")
            else "; no accelerator"
        ),
        "Versions: "
        + ", ".join(f"{k} {versions[k]}" for k in ("python", "torch", "optuna") if k in versions),
        f"Run: {report.get('datetime', '?')}",
        "",
        "| benchmark | median | min | rounds | notes |",
        "| --- | --- | --- | --- | --- |",
    ]
    for b in report.get("benchmarks", []):
        s = b["stats"]
        notes = ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(b.get("extra_info", {}).items()))
        lines.append(
            f"| `{b['name']}` | {_seconds(s['median'])} | {_seconds(s['min'])} | "
            f"{s['rounds']} | {notes} |"
        )
    found = report.get("hpo_ratios") or ratios(report.get("benchmarks", []))
    if found:
        lines += ["", "| ratio (same run) | value |", "| --- | --- |"]
        lines += [f"| {r['label']} | {r['ratio']:.2f}x |" for r in found]
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data
