"""pytest-benchmark JSON -> a Markdown table with the machine, versions and ratios."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hpo.errors import HpoError
from hpo.text import short

# (label, slower benchmark, faster benchmark, per): the ratio is slower's median / faster's
# median, both from the same run: timings on these machines drift, ratios measured side by side
# do not. With ``per`` (an extra_info key, such as the images trained), each median is divided by
# that amount of work first, so variants that do different amounts of work compare as rates.
Ratio = tuple[str, str, str, str | None]
RATIOS: tuple[Ratio, ...] = (
    *(
        (
            f"one epoch, tensor path vs the tutorial's torchvision loop ({dev})",
            f"test_one_epoch[{dev}-torchvision]",
            f"test_one_epoch[{dev}-tensor]",
            None,
        )
        for dev in ("cpu", "cuda", "mps")
    ),
    *(
        (
            f"one epoch, fp32 vs bf16 matmuls, {hidden} hidden units ({dev})",
            f"test_epoch_precision[{dev}-{hidden}-fp32]",
            f"test_epoch_precision[{dev}-{hidden}-bf16]",
            None,
        )
        for dev in ("cpu", "cuda")
        for hidden in ("300x100", "710x380")
    ),
    *(
        (
            f"{kind}: 1000-trial vs 100-trial study, total time (10x = flat per-trial cost)",
            f"test_study_overhead[{kind}-1000]",
            f"test_study_overhead[{kind}-100]",
            None,
        )
        for kind in ("in-memory", "sqlite", "postgresql")
    ),
    *(
        (
            f"study throughput (model-epochs/s), 2 workers vs 1, {precision}",
            f"test_study_jobs[1-{precision}]",
            f"test_study_jobs[2-{precision}]",
            "model_epochs",
        )
        for precision in ("fp32", "bf16")
    ),
    *(
        (
            f"study throughput (training images/s, end to end), hpo run --jobs {jobs}, "
            f"{precision}, vs the tutorial's loop (cpu)",
            "test_one_epoch[cpu-torchvision]",
            f"test_study_jobs[{jobs}-{precision}]",
            "train_images",
        )
        for precision in ("fp32", "bf16")
        for jobs in (1, 2)
    ),
    *(
        (
            f"study throughput (model-epochs/s), fp32 vs bf16 matmuls, --jobs {jobs}",
            f"test_study_jobs[{jobs}-fp32]",
            f"test_study_jobs[{jobs}-bf16]",
            "model_epochs",
        )
        for jobs in (1, 2)
    ),
)


_PER = {per for *_, per in RATIOS if per is not None}


def ratios(benchmarks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every ratio whose two benchmarks (and their ``per`` amounts, if any) are present."""
    found = {b["name"]: b for b in benchmarks}
    out = []
    for label, slow, fast, per in RATIOS:
        times = [_time_per(found.get(name), per) for name in (slow, fast)]
        if times[0] and times[1]:
            out.append({"label": label, "slow": slow, "fast": fast, "ratio": times[0] / times[1]})
    return out


def _time_per(b: Mapping[str, Any] | None, per: str | None) -> float | None:
    if b is None or not b["stats"]["median"]:
        return None
    if per is None:
        return float(b["stats"]["median"])
    amount = b.get("extra_info", {}).get(per)
    return float(b["stats"]["median"]) / amount if amount else None


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
        notes = ", ".join(f"{k}={short(v)}" for k, v in sorted(b.get("extra_info", {}).items()))
        lines.append(
            f"| `{b['name']}` | {_seconds(s['median'])} | {_seconds(s['min'])} | "
            f"{s['rounds']} | {notes} |"
        )
    # Recomputed from the medians printed above, so the two can never disagree; the stored ones
    # (conftest writes them) only for a file whose benchmarks this code no longer names.
    found = ratios(report.get("benchmarks", [])) or report.get("hpo_ratios") or []
    if found:
        lines += ["", "| ratio (same run) | value |", "| --- | --- |"]
        lines += [f"| {r['label']} | {r['ratio']:.2f}x |" for r in found]
    return "\n".join(lines) + "\n"


class BenchFileError(HpoError):
    """The file is not the JSON that ``pytest --benchmark-json`` writes."""


def load(path: Path) -> dict[str, Any]:
    fix = "pass the file that `pytest benchmarks/ --benchmark-json FILE` wrote"
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchFileError(f"{path} is not JSON ({exc}): {fix}") from None
    except RecursionError:  # nested deeper than Python's parser goes: no benchmark file is
        raise BenchFileError(f"{path} is nested too deeply to be a benchmark file: {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchFileError(f'{path} is not a pytest-benchmark file (no "benchmarks" list): {fix}')
    for i, b in enumerate(data["benchmarks"]):
        stats = b.get("stats") if isinstance(b, dict) else None
        numbers = isinstance(stats, dict) and all(
            isinstance(stats.get(k), int | float) for k in ("median", "min", "rounds")
        )
        if not (isinstance(b, dict) and isinstance(b.get("name"), str) and numbers):
            raise BenchFileError(
                f"{path}: benchmark {i} has no name or no stats (median, min, rounds), as "
                f"pytest-benchmark writes them: {fix}"
            )
        extra = b.get("extra_info", {})
        if not isinstance(extra, dict):
            raise BenchFileError(f"{path}: benchmark {i}'s extra_info is not an object: {fix}")
        for per in sorted(_PER & extra.keys()):  # the amounts of work ratios divide by
            if not _number(extra[per]):
                raise BenchFileError(
                    f"{path}: benchmark {i}'s extra_info.{per} is {extra[per]!r}, not a number: "
                    f"{fix}"
                )
    for outer, inner in (("machine_info", "cpu"), ("hpo_machine", "versions")):
        part = data.get(outer, {})
        if not isinstance(part, dict) or not isinstance(part.get(inner, {}), dict):
            raise BenchFileError(f"{path}: {outer} or its {inner} is not an object: {fix}")
    found = data.get("hpo_ratios") or []
    if not isinstance(found, list) or not all(
        isinstance(r, dict) and isinstance(r.get("label"), str) and _number(r.get("ratio"))
        for r in found
    ):
        raise BenchFileError(f"{path}: hpo_ratios is not a list of labelled ratios: {fix}")
    return data


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
