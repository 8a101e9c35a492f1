"""pytest-benchmark JSON -> a Markdown table with the machine, versions and ratios."""

from __future__ import annotations

import json
import statistics
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
        for dev in ("cpu", "cuda", "mps")
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
            "test_study_jobs[tutorial-loop]",
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


def expand(benchmarks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The benchmarks with each alternating one (``benchmarks/alternate.py``) replaced by a row
    per variant: its stats from its own round times, its notes with the round's, and ``round_s``
    and ``alternated`` (the round benchmark's name) for the ratios."""
    out: list[dict[str, Any]] = []
    for b in benchmarks:
        extra = dict(b.get("extra_info", {}))
        variants = extra.pop("variants", None)
        if not variants:
            out.append(dict(b))
            continue
        for name, v in variants.items():
            times = [float(t) for t in v["round_s"]]
            stats = {"median": statistics.median(times), "min": min(times), "rounds": len(times)}
            out.append(
                {
                    "name": name,
                    "stats": stats,
                    "extra_info": {**extra, **v.get("extra_info", {})},
                    "round_s": times,
                    "alternated": b["name"],
                }
            )
    return out


def unmatched_names(test: str, timed: Iterable[str]) -> list[str]:
    """The names in RATIOS that benchmark test ``test`` (its id: test_one_epoch[cpu]) owns and
    did not time (``timed``: its benchmark's name and its variants'): a benchmark or variant
    renamed without its entry, whose ratio would then silently vanish. A test owns the names
    that extend its id (test_one_epoch[cpu] owns test_one_epoch[cpu-tensor], test_study_jobs
    owns test_study_jobs[1-fp32])."""
    names = {name for _, slow, fast, _ in RATIOS for name in (slow, fast)}
    return sorted(name for name in names if _owns(test, name) and name not in set(timed))


def _owns(test: str, name: str) -> bool:
    if "[" not in test:
        return name == test or name.startswith(f"{test}[")
    return name == test or name.startswith(f"{test[:-1]}-")


def ratios(benchmarks: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every ratio whose two benchmarks (and their ``per`` amounts, if any) are present. Two
    variants timed in the same rounds are divided round by round: the median of those ratios,
    with their range (``low``, ``high``) and ``rounds``; others, median by median."""
    found = {b["name"]: b for b in expand(benchmarks)}
    out = []
    for label, slow_name, fast_name, per in RATIOS:
        slow, fast = found.get(slow_name), found.get(fast_name)
        if slow is None or fast is None:
            continue
        slow_work, fast_work = _amount(slow, per), _amount(fast, per)
        if not (slow_work and fast_work):
            continue
        ratio: dict[str, Any] = {"label": label, "slow": slow_name, "fast": fast_name}
        if _same_rounds(slow, fast):
            each = [
                (s / slow_work) / (f / fast_work)
                for s, f in zip(slow["round_s"], fast["round_s"], strict=True)
            ]
            ratio |= {"ratio": statistics.median(each), "low": min(each), "high": max(each)}
            ratio["rounds"] = len(each)
        elif slow["stats"]["median"] and fast["stats"]["median"]:
            ratio["ratio"] = (slow["stats"]["median"] / slow_work) / (
                fast["stats"]["median"] / fast_work
            )
        else:
            continue
        out.append(ratio)
    return out


def _same_rounds(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (
        a.get("alternated") is not None
        and a.get("alternated") == b.get("alternated")
        and len(a["round_s"]) == len(b["round_s"])
        and all(t > 0 for t in b["round_s"])
    )


def _amount(b: Mapping[str, Any], per: str | None) -> float | None:
    """The work a benchmark's time is divided by: 1 without ``per``."""
    if per is None:
        return 1.0
    amount = b.get("extra_info", {}).get(per)
    return float(amount) if amount else None


def _basis(ratio: Mapping[str, Any]) -> str:
    if "rounds" in ratio:
        return (
            f"median of {ratio['rounds']} alternated rounds' ratios "
            f"({ratio['low']:.2f}x-{ratio['high']:.2f}x)"
        )
    return "medians of variants timed one after the other"


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
    for b in expand(report.get("benchmarks", [])):
        s = b["stats"]
        notes = ", ".join(f"{k}={short(v)}" for k, v in sorted(b.get("extra_info", {}).items()))
        rounds = f"{s['rounds']}, alternated" if "alternated" in b else str(s["rounds"])
        lines.append(
            f"| `{b['name']}` | {_seconds(s['median'])} | {_seconds(s['min'])} | "
            f"{rounds} | {notes} |"
        )
    # Recomputed from the times printed above, so the two can never disagree; the stored ones
    # (conftest writes them) only for a file whose benchmarks this code no longer names.
    found = ratios(report.get("benchmarks", [])) or report.get("hpo_ratios") or []
    if found:
        lines += ["", "| ratio (same run) | value | from |", "| --- | --- | --- |"]
        lines += [f"| {r['label']} | {r['ratio']:.2f}x | {_basis(r)} |" for r in found]
    return "\n".join(lines) + "\n"


class BenchFileError(HpoError):
    """The file is not the JSON that ``pytest --benchmark-json`` writes."""


def load(path: Path) -> dict[str, Any]:
    fix = "pass the file that `pytest benchmarks/ --benchmark-json FILE` wrote"
    try:
        text = Path(path).read_text()
        if not text.strip():  # pytest-benchmark empties it under --benchmark-disable
            raise BenchFileError(
                f"{path} is empty: pytest-benchmark writes nothing there when timing is off "
                "(--benchmark-disable, CI's smoke); run `pytest benchmarks/ --benchmark-json "
                "FILE` without it"
            )
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchFileError(f"{path} is not JSON ({exc}): {fix}") from None
    except RecursionError:  # nested deeper than Python's parser goes: no benchmark file is
        raise BenchFileError(f"{path} is nested too deeply to be a benchmark file: {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise BenchFileError(f'{path} is not a pytest-benchmark file (no "benchmarks" list): {fix}')
    if not data["benchmarks"]:  # a run whose benchmarks were all skipped or deselected
        raise BenchFileError(
            f"{path} holds no benchmarks: its run timed none (every one skipped or deselected: "
            "`pytest benchmarks/ -rs` says why); run `pytest benchmarks/ --benchmark-json FILE`"
        )
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
        _check_amounts(extra, f"{path}: benchmark {i}'s extra_info", fix)
        for name, v in _variants(extra.get("variants"), f"{path}: benchmark {i}", fix).items():
            _check_amounts(v.get("extra_info", {}), f"{path}: variant {name}'s extra_info", fix)
    for outer, inner in (("machine_info", "cpu"), ("hpo_machine", "versions")):
        part = data.get(outer, {})
        if not isinstance(part, dict) or not isinstance(part.get(inner, {}), dict):
            raise BenchFileError(f"{path}: {outer} or its {inner} is not an object: {fix}")
    found = data.get("hpo_ratios") or []
    if not isinstance(found, list) or not all(
        isinstance(r, dict)
        and isinstance(r.get("label"), str)
        and _number(r.get("ratio"))
        # alternated rounds come with their range (_basis)
        and ("rounds" not in r or (_number(r.get("low")) and _number(r.get("high"))))
        for r in found
    ):
        raise BenchFileError(f"{path}: hpo_ratios is not a list of labelled ratios: {fix}")
    return data


def _check_amounts(extra: Mapping[str, Any], where: str, fix: str) -> None:
    """The amounts of work that ratios divide by must be numbers."""
    for per in sorted(_PER & extra.keys()):
        if not _number(extra[per]):
            raise BenchFileError(f"{where}.{per} is {extra[per]!r}, not a number: {fix}")


def _variants(variants: object, where: str, fix: str) -> dict[str, Any]:
    """An alternating benchmark's variants, checked to be what benchmarks/alternate.py writes."""
    if variants is None:
        return {}
    shape = "an object of variants, each with round_s (seconds per round) and extra_info"
    if not isinstance(variants, dict) or not variants:
        raise BenchFileError(f"{where}'s extra_info.variants is not {shape}: {fix}")
    lengths = set()
    for name, v in variants.items():
        times = v.get("round_s") if isinstance(v, dict) else None
        if not (
            isinstance(times, list)
            and times
            and all(_number(t) and t >= 0 for t in times)
            and isinstance(v.get("extra_info", {}), dict)
        ):
            raise BenchFileError(f"{where}'s variant {name} is not {shape}: {fix}")
        lengths.add(len(times))
    if len(lengths) > 1:  # alternated in the same rounds: one time each per round
        raise BenchFileError(f"{where}'s variants have different numbers of rounds: {fix}")
    return variants


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
