"""``build_report``: a stored study -> one self-contained HTML page and a CSV of its trials.

study.py reads the study; tables.py makes the DataFrames; verdict.py decides what to claim;
confirm.py (through hpo.retrain) retrains on the full training set; figures.py and landscape.py
(plotly) and pictures.py (matplotlib) draw; html.py writes the page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from hpo import __version__
from hpo.config import TrainConfig
from hpo.data import DataError
from hpo.files import replacing
from hpo.mnist import Mnist
from hpo.records import Role, confirm_runs_of
from hpo.report.confirm import confirm_frame, run_confirm
from hpo.report.figures import curves, history, schedules
from hpo.report.html import Page, render
from hpo.report.landscape import landscape
from hpo.report.pictures import Picture, all_pictures
from hpo.report.stats import Difference, Sample, sample_of, t_quantile, welch_interval
from hpo.report.study import DEFAULT_STUDY, StudyData, read_study
from hpo.report.tables import (
    TRIAL_COLUMNS,
    Summary,
    summarise,
    summary_frame,
    top_frame,
    trials_frame,
)
from hpo.report.verdict import Verdict, decide
from hpo.retrain import models_dir, trained
from hpo.storage_url import DEFAULT_STORAGE, RUNS_DIR

__all__ = [
    "DEFAULT_STUDY",
    "TRIAL_COLUMNS",
    "Difference",
    "Report",
    "ReportOptions",
    "Sample",
    "StudyData",
    "Verdict",
    "build_report",
    "read_study",
    "sample_of",
    "t_quantile",
    "trials_frame",
    "welch_interval",
]

Log = Callable[[str], None]


@dataclass(frozen=True)
class ReportOptions:
    study: str = DEFAULT_STUDY
    storage: str = DEFAULT_STORAGE
    out: Path | None = None  # default: <runs_dir>/<study>/report.html
    runs_dir: Path = RUNS_DIR
    confirm: int = 0  # seeds per configuration; 0 reuses what earlier --confirm runs stored
    top_k: int = 3
    pictures: bool = True
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    data_dir: Path | None = None
    compile: bool | None = None  # None: train.fit's choice for the device

    @property
    def html_path(self) -> Path:
        return self.out or self.runs_dir / self.study / "report.html"

    @property
    def csv_path(self) -> Path:
        """trials.csv beside report.html; <name>-trials.csv beside any other <name>.html, so that
        two reports written into one folder do not share (and overwrite) one table."""
        html = self.html_path
        return html.with_name("trials.csv" if html.stem == "report" else f"{html.stem}-trials.csv")

    @property
    def models_dir(self) -> Path:
        return models_dir(self.runs_dir, self.study)


@dataclass(frozen=True)
class Report:
    html_path: Path
    csv_path: Path
    html_bytes: int
    verdict: Verdict
    summary: Summary
    partial: bool
    notes: tuple[str, ...]
    models: dict[Role, str]  # finalize's exports on this machine (hpo.retrain.load_model)


def build_report(
    options: ReportOptions, *, mnist: Mnist | None = None, log: Log = lambda _m: None
) -> Report:
    """Read the study, retrain what ``--confirm`` and the pictures need, write HTML and CSV.

    ``mnist`` is loaded from ``options.data_dir`` only when something has to be trained."""
    data = read_study(options.study, options.storage)
    loaded: list[Mnist] = [mnist] if mnist is not None else []

    def get_mnist() -> Mnist:
        if not loaded:
            loaded.append(Mnist.load(options.data_dir, log=log))
        return loaded[0]

    runs = confirm_runs_of(data.attrs)
    if options.confirm and not data.complete:
        log(
            f"note: --confirm {options.confirm}: the study has no complete trial yet, so "
            f"nothing to retrain; `{data.command('run')}` trains some first"
        )
    elif options.confirm:
        runs = run_confirm(
            data,
            get_mnist(),
            options.device,
            n_seeds=options.confirm,
            top_k=options.top_k,
            cache_dir=options.models_dir,
            compile=options.compile,
            log=log,
        )
    verdict = decide(data, runs)
    summary = summarise(data)
    notes: list[str] = []
    if data.partial:
        queued = f", {summary.queued} queued to run again" if summary.queued else ""
        notes.append(
            f"Partial: {summary.complete + summary.pruned} trials finished, {summary.running} "
            f"running (or left RUNNING by a killed run){queued}: the numbers can still change."
        )
    if data.final is None and data.best is not None:  # else finalize has nothing to measure
        notes.append(
            f"Not finalized: run `{data.command('finalize')}` to measure the best and the "
            f"baseline on the test set (or `{data.command('report', '--confirm 5')}` for "
            "several seeds)."
        )
    pictures = _pictures(data, verdict, options, get_mnist, notes, log)
    page = Page(
        data.name,
        data.partial,
        data.finalized_at,
        verdict,
        summary_frame(data, summary),
        top_frame(data),
        data.target_label,
        confirm_frame(data, runs) if runs else None,
        [history(data), curves(data), *landscape(data), schedules(data)],
        pictures,
        notes,
        f"hpo {__version__} report of {data.name} ({data.storage}), written "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}.",
    )
    html = render(page).encode("utf-8")
    _write(options.html_path, html)
    _write(options.csv_path, trials_frame(data).to_csv(index=False).encode("utf-8"))
    return Report(
        options.html_path,
        options.csv_path,
        len(html),
        verdict,
        summary,
        data.partial,
        tuple(notes),
        data.exported_models(),
    )


def _pictures(
    data: StudyData,
    verdict: Verdict,
    options: ReportOptions,
    get_mnist: Callable[[], Mnist],
    notes: list[str],
    log: Log,
) -> list[Picture]:
    if not options.pictures:
        notes.append("Pictures skipped (--no-pictures).")
        return []
    if verdict.best is None or verdict.baseline is None:
        notes.append("Pictures need a best trial and a baseline trial.")
        return []
    try:
        mnist = get_mnist()
    except DataError as exc:  # the rest of the report needs no data: say why, do not fail
        why = " ".join(line.strip().removeprefix("- ") for line in str(exc).splitlines())
        notes.append(f"Pictures skipped: MNIST unavailable. {why}")  # the file(s) and the fix
        return []
    models = []
    for side in (verdict.best, verdict.baseline):
        # The config finalize trained, else the trial's: the same record in a finished study.
        final = data.final_for(next(t for t in data.trials if t.number == side.trial), side.role)
        config = final["config"] if final else side.config
        model = trained(
            TrainConfig.from_dict(config),
            mnist,
            options.device,
            options.models_dir,
            # as finalize trained it, where recorded
            compile=final.get("compile", options.compile) if final else options.compile,
            threads=final.get("threads") if final else None,
            log=log,
        )
        stored = final["test_acc"] if final else None
        if stored is not None and model.test_acc != stored:
            # Same config and seed; a different device or kernel can still change the result.
            notes.append(
                f"The pictures' {side.role} model (retrained on {model.device}) scores "
                f"{model.test_acc:.2%} on the test set; finalize stored {stored:.2%}."
            )
        models.append(model)
    return all_pictures(mnist, models[0], models[1])


def _write(path: Path, payload: bytes) -> None:
    with replacing(path) as tmp:
        tmp.write_bytes(payload)
