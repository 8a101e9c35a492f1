"""Where a study's time went, from its trials' stored curves and timestamps.

    python -m benchmarks.time_split STORAGE_URL STUDY [--jobs N] [--wall SECONDS]

Prints, per worker: training, evaluation and the rest inside trials (compile warm-up, CUDA graph
capture, storage writes), the median training epoch, the median per-trial overhead (a trial's
wall time minus its training and evaluation), and, given the study's wall time, the seconds
outside its trials (process start before the first trial, and the end after the last).
``test_study_jobs`` also knows when its command started, and stores the two apart (``start_s``,
``end_s``) in its JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics

from hpo.errors import HpoError
from hpo.storage import load_existing_study


def time_split(
    storage: str,
    study: str,
    jobs: int = 1,
    wall: float | None = None,
    launched: dt.datetime | None = None,
) -> dict[str, float]:
    """``wall``: the command's seconds; ``launched``: when it started, in local time as Optuna
    stamps trials."""
    _, loaded = load_existing_study(storage, study)  # a missing file is an error, not created
    trials = [t for t in loaded.trials if "curves" in t.user_attrs and t.datetime_start is not None]
    train = [s for t in trials for s in t.user_attrs["curves"]["train_seconds"]]
    evals = [sum(t.user_attrs["curves"]["eval_seconds"]) for t in trials]
    overheads = [
        t.user_attrs["wall_seconds"] - sum(t.user_attrs["curves"]["train_seconds"]) - e
        for t, e in zip(trials, evals, strict=True)
    ]
    out = {
        "epoch_s_per_worker": round(statistics.median(train), 3),
        "train_s_per_worker": round(sum(train) / jobs, 1),
        "eval_s_per_worker": round(sum(evals) / jobs, 1),
        "other_s_per_worker": round(sum(overheads) / jobs, 1),
        "trial_overhead_s_median": round(statistics.median(overheads), 2),
    }
    if wall is not None:
        first = min(t.datetime_start for t in trials if t.datetime_start is not None)
        last = max(t.datetime_complete for t in trials if t.datetime_complete is not None)
        out["outside_trials_s"] = round(wall - (last - first).total_seconds(), 1)
        if launched is not None:
            out["start_s"] = round((first - launched).total_seconds(), 1)
            out["end_s"] = round(wall - (last - launched).total_seconds(), 1)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("storage")
    parser.add_argument("study")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--wall", type=float, default=None, help="the study's wall seconds")
    args = parser.parse_args()
    try:
        split = time_split(args.storage, args.study, args.jobs, args.wall)
    except HpoError as exc:
        raise SystemExit(f"time_split: {exc}") from None
    for key, value in split.items():
        print(f"{key}: {value}")
