"""The measurement scripts the README cites, each run once as a user runs it
(``python -m benchmarks.NAME``, smallest honest arguments) and its printout checked: the lines it
promises, numbers that parse and make sense together, the row count, the file it writes.

Nothing else runs them, so without this a script can rot between the README's measurements.
``time_split`` is left out: ``test_study_jobs`` and ``start_end`` call it. CUDA-only branches
(graph variants, device kernels) cannot run on a CPU machine and are not checked here.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 600  # a hung script fails its test instead of holding the whole run
NUM = r"([-+]?\d+(?:\.\d+)?)"  # a number as the scripts print them
TRAIN_IMAGES, SPLIT_TRAIN_IMAGES, BATCH = 60_000, 50_000, 64  # full=True; the validation split's


def run_script(name: str, *args: str) -> list[str]:
    """``python -m benchmarks.NAME ARGS`` from the repository root; its stdout's lines.

    A traceback on stderr fails too, even with exit status 0: gpu_baseline prints one for a
    variant that fails and goes on to the next."""
    paths = [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    return done.stdout.splitlines()


def match(pattern: str, line: str) -> tuple[str, ...]:
    found = re.fullmatch(pattern, line)
    assert found is not None, f"{line!r} does not match {pattern!r}"
    return found.groups()


def positive(*texts: str) -> list[float]:
    values = [float(t) for t in texts]
    assert all(math.isfinite(v) and v > 0 for v in values), values
    return values


def accuracy(text: str) -> float:
    """A percentage after at least one epoch of the tutorial's network: chance is 10%."""
    value = float(text)
    assert 80 < value <= 100, value
    return value


def test_aot_vs_jit_times_each_step_kind_once_per_round_and_size() -> None:
    lines = run_script("aot_vs_jit", "--rounds", "2", "--steps", "50", "64x32", "32x16")
    threads, epoch = match(r"threads (\d+); seconds for 50 of (\d+) steps", lines[0])
    assert int(threads) >= 1
    assert int(epoch) == SPLIT_TRAIN_IMAGES // BATCH  # the validation split's training side
    assert len(lines) == 3  # the header and one row per size
    for line, size in zip(lines[1:], ("64x32", "32x16"), strict=True):
        got, aot, jit = match(r"(\d+x\d+): ahead of time (.+); torch\.compile (.+)", line)
        assert got == size
        for cell in (aot, jit):
            assert len(positive(*cell.split(", "))) == 2  # one time per round


def test_gpu_baseline_on_cpu_tables_a_step_by_step_variant_and_skips_graph_variants() -> None:
    lines = run_script(
        "gpu_baseline", "--device", "cpu", "--seeds", "1", "--epochs", "1",
        "compiled", "eager-graph",
    )  # fmt: skip
    assert lines[0].startswith("device: ") and lines[0].endswith("; 1 epochs, full=True")
    run_s, seed_acc = match(rf"  compiled, step by step seed 0: {NUM} s, {NUM}%", lines[1])
    assert (
        "skipped eager-graph (eager, CUDA graphs): CUDA graphs need a CUDA device, not cpu" in lines
    )
    table = [line for line in lines if line.startswith("|")]
    assert table[0].startswith("| variant | compiled | graphed | seeds | s/epoch (train) |")
    assert len(table) == 3  # header, separator and the one variant that ran
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:4] == ["compiled, step by step", "True", "False", "1"]
    per_epoch, run = positive(cells[4], cells[5])
    assert run == float(run_s)  # the median of one seed's run
    assert per_epoch < run + 0.005  # one epoch: its training, then its evaluation; rounding
    # Loading the CPU's ahead-of-time step takes milliseconds (0.0 at one decimal); nothing is
    # captured without graphs.
    assert float(cells[6]) >= 0 and float(cells[7]) == 0
    mean, low, high = match(rf"{NUM} \({NUM}-{NUM}\)", cells[8])
    assert accuracy(mean) == float(low) == float(high) == float(seed_acc)  # one seed


def test_precision_accuracy_summarises_each_precision_and_their_difference() -> None:
    lines = run_script("precision_accuracy", "--seeds", "2", "--epochs", "1", "baseline")
    assert lines[0] == "baseline: 300/100, 1 epochs, seeds 0-1"
    runs: dict[str, list[float]] = {"fp32": [], "bf16": []}
    for line, (seed, precision) in zip(
        lines[1:5], [(0, "fp32"), (0, "bf16"), (1, "fp32"), (1, "bf16")], strict=True
    ):
        assert line.startswith(f"  seed {seed} {precision}: ")
        runs[precision].append(accuracy(match(rf"  seed \d \w+: {NUM}%", line)[0]))
    means = {}
    for line, (precision, values) in zip(lines[5:7], runs.items(), strict=True):
        mean, sd, low, high = match(rf"  {precision}: mean {NUM}% sd {NUM} \({NUM}-{NUM}\)", line)
        assert abs(float(mean) - sum(values) / 2) < 0.011  # from the printed, rounded runs
        assert float(sd) >= 0 and (float(low), float(high)) == (min(values), max(values))
        means[precision] = float(mean)
    diff, below, above = (
        float(v) for v in match(rf"  bf16 - fp32: {NUM} points, 95% \[{NUM}, {NUM}\]", lines[7])
    )
    assert below <= diff <= above
    assert abs(diff - (means["bf16"] - means["fp32"])) < 0.011  # the printed means are rounded
    positive(*match(rf"  64x784x300 matmul, one thread: fp32 {NUM} us, bf16 {NUM} us", lines[8]))
    assert len(lines) == 9


def test_profile_step_puts_the_matmuls_inside_the_steps_time() -> None:
    lines = run_script("profile_step", "64", "32")
    assert len(lines) == 2
    (step_ms,) = positive(
        *match(rf"64/32, compiled=True: {NUM} ms per step \(profiled\)", lines[0])
    )
    matmul_ms, share, gflops = positive(
        *match(rf"matmuls: {NUM} ms \({NUM}% of the step\), {NUM} GFLOP/s", lines[1])
    )
    # Self time inside the step's own wall time: a share over 100% would mean the two were
    # measured over different windows.
    assert matmul_ms <= step_ms and share <= 100
    assert gflops < 1e5  # a 2-core CPU, not a miscounted unit


def test_profile_epoch_on_cpu_prints_the_operator_table_and_writes_a_chrome_trace(
    tmp_path: Path,
) -> None:
    lines = run_script(
        "profile_epoch", "--device", "cpu", "--epochs", "2", "--trace", str(tmp_path)
    )
    assert lines[0] == "device: cpu (cpu)"
    epoch = rf"one epoch under the profiler: {NUM} s \(train {NUM} s, eval {NUM} s\); "
    wall, train, evaluation = positive(*match(epoch + r"StepKind\(.*\)", lines[1]))
    assert wall + 0.002 >= train + evaluation  # the window holds the last epoch; rounding
    us, steps = match(rf"train step: {NUM} us wall \((\d+) steps\)", lines[2])
    assert int(steps) == math.ceil(TRAIN_IMAGES / BATCH)
    assert abs(float(us) - train / int(steps) * 1e6) <= 1.1  # train's 3 decimals over 938
    assert lines[3].startswith("no device kernels recorded")  # the CPU has none
    assert any("Self CPU" in line for line in lines) and any("aten::" in line for line in lines)
    trace = tmp_path / "epoch-cpu.json.gz"  # gzipped: a GPU's trace is tens of MB
    assert lines[-1] == f"trace: {trace}"
    events: list[dict[str, Any]] = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    assert any(e.get("ph") == "X" and str(e.get("name")).startswith("aten::") for e in events)


def test_repeat_epoch_prints_one_training_time_per_round() -> None:
    lines = run_script("repeat_epoch", "2")
    assert len(lines) == 1
    (times,) = match(r"epoch seconds: (.+)", lines[0])
    assert len(positive(*times.split(", "))) == 2
    lines = run_script("repeat_epoch", "1", "--threads", "2", "1")
    assert [line.split(":")[0] for line in lines] == ["threads 2", "threads 1"]
    assert all(len(positive(*line.split(": ")[1].split(", "))) == 1 for line in lines)


def test_start_end_tables_the_median_start_and_end_per_jobs_variant() -> None:
    lines = run_script(
        "start_end", "--rounds", "1", "--trials", "1", "--epochs", "1", "--jobs", "1"
    )
    assert re.fullmatch(r"variant +wall +start_s +end_s +\(medians of 1\)", lines[0])
    assert len(lines) == 2  # one row: --jobs 1 of this tree
    wall, start, end = (
        float(v) for v in match(rf"this tree, --jobs 1 +{NUM} +{NUM} +{NUM}", lines[1])
    )
    assert start > 0 and end >= 0  # from launch to the first trial; the last trial to the exit
    assert start + end < wall  # the trial itself took the rest


def _gpu_session(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``bash benchmarks/gpu_session.sh none``: its checks before any stage, then no stage. Run in
    a folder that links the code but not this checkout's carried .whl/.mnist_gz (built for the
    GPU machine's Python, not this one's)."""
    here = tmp_path / "repo"
    here.mkdir(parents=True)
    for part in ("hpo", "benchmarks", "studies"):
        (here / part).symlink_to(ROOT / part)
    return subprocess.run(
        ["bash", "benchmarks/gpu_session.sh", "none"],
        cwd=here,
        env={**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


def test_gpu_session_checks_its_needs_before_spending_the_lease(tmp_path: Path) -> None:
    done = _gpu_session(tmp_path)  # the data where hpo finds it (.ci/run fetched it)
    assert done.returncode == 0, done.stderr[-3000:]
    (versions,) = [line for line in done.stdout.splitlines() if line.startswith("torch ")]
    assert f" optuna {optuna.__version__}" in versions
    missing = _gpu_session(tmp_path / "no-data", HPO_DATA_DIR=str(tmp_path / "empty"))
    assert missing.returncode == 1
    assert "no verified MNIST: run benchmarks/gpu_carry.sh" in missing.stderr
    assert "torch " not in missing.stdout  # refused before the first stage's work
