"""The fixed costs of ``hpo run``: seconds from launch to the first trial, and from the last trial
to the exit, with ``--jobs 1`` and ``--jobs 2``, optionally side by side with another revision.

    python -m benchmarks.start_end [--rounds N] [--against REV] [--trials T --epochs E]
                                   [--jobs J [J ...]]

Each round runs a 2-trial, 1-epoch study (or T x E) of ``test_study_jobs``' spec (compiled, warm
cache) per variant, alternating, and prints the medians. ``--against REV`` checks REV out in a
temporary git worktree and runs its ``hpo`` the same way: how the start-up work and the
ahead-of-time step were measured against the code before them (``--trials 12 --epochs 5`` is
``test_study_jobs``' own study). ``--jobs`` picks the worker counts (default: 1 and 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.test_study_jobs import REPO, run_command, study_command
from benchmarks.time_split import time_split
from hpo.data import data_root

TRIALS, EPOCHS = 2, 1
JOBS = (1, 2)


def measure(
    repo: Path, jobs: int, tmp: Path, study: str, trials: int = TRIALS, epochs: int = EPOCHS
) -> tuple[float, float, float]:
    """(wall, start_s, end_s) of one run of ``repo``'s ``hpo run``."""
    cmd = study_command(tmp, data_root(None), study, trials, jobs, epochs=epochs, smoke=False)
    launched, began = dt.datetime.now(), time.perf_counter()
    run_command(cmd, tmp, repo)
    wall = time.perf_counter() - began
    split = time_split(f"sqlite:///{tmp / 'bench.db'}", study, jobs, wall, launched)
    return wall, split["start_s"], split["end_s"]


def main(
    rounds: int,
    against: str | None,
    trials: int = TRIALS,
    epochs: int = EPOCHS,
    jobs_list: tuple[int, ...] = JOBS,
) -> None:
    with tempfile.TemporaryDirectory(prefix="hpo-start-end-") as scratch:
        repos = {"this tree": REPO}
        if against is not None:
            other = Path(scratch) / "other"
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "-q", "--detach",
                            str(other), against], check=True)  # fmt: skip
            repos[against] = other
        try:
            rows: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
            names = (f"s{n}" for n in itertools.count())  # one storage, a fresh study each run
            for k in range(rounds + 1):  # round 0 fills each variant's compile cache
                for name, repo in repos.items():
                    for jobs in jobs_list:
                        got = measure(repo, jobs, Path(scratch), next(names), trials, epochs)
                        if k:
                            rows.setdefault((name, jobs), []).append(got)
            print(f"{'variant':<24}{'wall':>8}{'start_s':>9}{'end_s':>7}  (medians of {rounds})")
            for (name, jobs), runs in rows.items():
                wall, start, end = (statistics.median(r[i] for r in runs) for i in range(3))
                print(f"{f'{name}, --jobs {jobs}':<24}{wall:>8.2f}{start:>9.2f}{end:>7.2f}")
        finally:
            if against is not None:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force",
                                str(Path(scratch) / "other")], check=False)  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--against", default=None, metavar="REV", help="a git revision to compare")
    parser.add_argument("--trials", type=int, default=TRIALS)
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--jobs", type=int, nargs="+", default=list(JOBS), metavar="J",
                        help="worker counts to measure (default: 1 2)")  # fmt: skip
    args = parser.parse_args()
    if args.rounds < 1:  # round 0 only warms the caches: no round would be measured
        parser.error("--rounds must be at least 1")
    main(args.rounds, args.against, args.trials, args.epochs, tuple(args.jobs))
