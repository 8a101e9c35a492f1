"""The study summary ``hpo run`` and ``hpo finalize`` print last: a table, or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.storage_url import hpo_command
from hpo.text import short

if TYPE_CHECKING:  # for annotations only: the parser is built without importing Optuna
    from hpo.records import Role
    from hpo.study_summary import StudySummary, TrialBrief


def format_summary(s: StudySummary, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(s.to_dict(), indent=2)
    lines = [
        f"study     {s.study_name}  ({s.storage})",
        f"trials    {s.finished} finished of {s.target}: {s.complete} complete, "
        f"{s.pruned} pruned; {s.failed} failed" + (f"; {s.running} running" if s.running else ""),
        f"epochs    {s.epochs_run} run of {s.epochs_without_pruning} without pruning "
        f"({s.epochs_saved:.0%} saved; {s.epochs} per trial)",
    ]
    if s.stopped_early:
        lines.append(f"stopped   early ({s.stopped_early}); rerun the same command to go on")
    if s.best is not None:
        params = "  ".join(f"{k}={short(v)}" for k, v in s.best.params.items())
        lines.append(f"best      trial {s.best.number}: {params}")
    final = s.final
    finalize = hpo_command("finalize", study=s.study_name, storage=s.storage)
    rows: tuple[tuple[Role, TrialBrief | None], ...] = (("best", s.best), ("baseline", s.baseline))
    lines.append(f"\n{'':16}{'val acc':>9}{'test acc':>10}{'s/epoch':>9}")
    models: dict[Role, str] = {}
    for role, brief in rows:
        if brief is None:
            continue
        done = final.get(role) if final else None
        if done is None or done.get("trial") != brief.number:  # finalize measured another
            test_acc, spe = None, None
        else:
            test_acc, spe = done.get("test_acc"), done.get("seconds_per_epoch")
            # Where this machine finalized: another sharing the study has no such file.
            if (model := done.get("model")) and Path(model).is_file():
                models[role] = model
        lines.append(
            f"{f'{role} (#{brief.number})':16}{_pct(brief.val_acc):>9}{_pct(test_acc):>10}"
            f"{_num(spe):>9}"
        )
    if not final:
        lines.append(f"(test accuracy: not finalized; run `{finalize}`)")
    if models:
        from hpo.records import models_text  # Optuna is loaded by now: the study was read

        lines.append(f"\nmodels    {models_text(models)}")
    elif final:  # finalized elsewhere, by an older hpo, or the files were removed
        lines.append(
            f"\nmodels    none on this machine: `{finalize}` trains and "
            f"writes runs/{s.study_name}/best.pt and baseline.pt"
        )
    return "\n".join(lines)


def _pct(v: Any) -> str:
    return f"{v:.2%}" if isinstance(v, int | float) else "-"


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, int | float) else "-"
