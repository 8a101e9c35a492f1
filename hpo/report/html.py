"""One self-contained HTML page: plotly.js inline once, PNGs as data URIs, nothing fetched."""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import pandas as pd
import plotly.io as pio
from plotly.offline import get_plotlyjs

from hpo.report.figures import Figure
from hpo.report.pictures import Picture
from hpo.report.verdict import Side, Verdict, percent
from hpo.text import short

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b}
main{max-width:1120px;margin:0 auto;padding:18px 24px 60px}
h1{font-size:26px;margin:6px 0 2px}h2{margin:34px 0 8px;border-bottom:1px solid #ddd}
h3{margin:24px 0 4px;font-size:17px}.sub{color:#555;margin:0 0 10px}
.headline{font-size:19px;padding:12px 16px;border-left:6px solid #888;background:#f6f6f6}
.beats{border-color:#2ca02c}.worse{border-color:#d62728}.unconfirmed,.none{border-color:#e6a700}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:13px;margin-left:6px;
background:#e8e8e8}.badge.partial{background:#ffe08a}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
th,td{border:1px solid #ddd;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.caption{color:#444;font-size:14px;margin:2px 0 6px}.note{color:#8a5a00}
img{max-width:100%;border:1px solid #eee}small{color:#666}th.group{background:#fafafa;
font-weight:600;color:#444}.scroll{overflow-x:auto}footer{color:#777;font-size:13px;margin-top:40px}
"""


@dataclass(frozen=True)
class Page:
    study: str
    partial: bool
    finalized: str | None  # when, or None
    verdict: Verdict
    summary: pd.DataFrame
    top: pd.DataFrame
    ranked_by: str  # what the top trials are ranked by: the objective, in words
    confirm: pd.DataFrame | None
    figures: list[Figure]
    pictures: list[Picture]
    notes: list[str]
    footer: str


def render(page: Page) -> str:
    badges = [
        ("partial", "partial") if page.partial else ("", "finished"),
        ("", f"finalized {page.finalized}" if page.finalized else "not finalized"),
    ]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>hpo report: {escape(page.study)}</title><style>{_CSS}</style>",
        # plotly.js exactly as include_plotlyjs=True writes it, but once for every figure.
        "<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>",
        f"<script>{get_plotlyjs()}</script></head><body><main>",
        f"<h1>Did tuning beat the tutorial?</h1><p class='sub'>study <b>{escape(page.study)}</b>"
        + "".join(f"<span class='badge {c}'>{escape(t)}</span>" for c, t in badges)
        + "</p>",
        _verdict(page.verdict),
        *(f"<p class='note'>{escape(n)}</p>" for n in page.notes),
        "<h2 id='study'>Study</h2>",
        _table(page.summary, "summary"),
        f"<h3>Top trials (by {escape(page.ranked_by)})</h3>",
        _table(page.top, "top-trials") if len(page.top) else "<p>No complete trial.</p>",
    ]
    if page.confirm is not None:
        parts += [
            "<h3>Confirmation runs (test set, full training set)</h3>",
            f"<p class='caption'>The best stays the search's choice by {escape(page.ranked_by)}; "
            "the others show whether the ranking survives new seeds.</p>",
            _table(page.confirm, "confirm"),
        ]
    parts.append("<h2 id='figures'>Figures</h2>")
    for fig in page.figures:
        parts += [f"<h3>{escape(fig.title)}</h3><p class='caption'>{escape(fig.caption)}</p>"]
        if fig.figure is not None:
            parts.append(
                pio.to_html(
                    fig.figure,
                    include_plotlyjs=False,
                    full_html=False,
                    div_id=f"fig-{fig.key}",
                    default_height="auto",
                    config={"displaylogo": False, "responsive": True},
                )
            )
    parts.append("<h2 id='pictures'>The tutorial's pictures, for the winner</h2>")
    if not page.pictures:
        parts.append("<p class='note'>No pictures in this report (see the notes above).</p>")
    for pic in page.pictures:
        parts.append(
            f"<h3>{escape(pic.title)}</h3><p class='caption'>{escape(pic.caption)}</p>"
            f"<img alt='{escape(pic.title)}' src='data:image/png;base64,"
            f"{pic.png_base64}'>"
        )
    parts.append(f"<footer>{escape(page.footer)}</footer></main></body></html>")
    return "\n".join(parts)


def _verdict(v: Verdict) -> str:
    out = f"<h2 id='verdict'>Verdict</h2><p class='headline {v.kind}'>{escape(v.headline)}</p>"
    sides = [s for s in (v.baseline, v.best) if s is not None]
    if not sides:
        return out
    pair = (v.baseline, v.best) if v.baseline and v.best else None
    head = "".join(
        f"<th>{'Tutorial' if s.role == 'baseline' else 'Best'} (trial #{s.trial})</th>"
        for s in sides
    )
    rows = [f"<tr><th></th>{head}{'<th>Difference</th>' if pair else ''}</tr>"]

    def row(label: str, metric: str, cells: list[str], diff: str = "") -> None:
        rows.append(
            f"<tr data-metric='{escape(metric)}'><th>{escape(label)}</th>{''.join(cells)}"
            + (f"<td class='num'>{escape(diff)}</td>" if pair else "")
            + "</tr>"
        )

    val_gap = ""
    if pair and pair[0].val_acc is not None and pair[1].val_acc is not None:
        val_gap = f"{(pair[1].val_acc - pair[0].val_acc) * 100:+.2f} pp (1 run each)"
    row(
        "Validation accuracy (the search: 1 run)",
        "val_acc",
        [_num(s, s.val_acc, percent(s.val_acc)) for s in sides],
        val_gap,
    )
    row("Test accuracy", "test_acc", [_test_cell(s) for s in sides], _ci(v))
    speed = ""
    if pair and pair[0].seconds_per_epoch and pair[1].seconds_per_epoch:
        speed = f"{pair[1].seconds_per_epoch / pair[0].seconds_per_epoch:.2f}x the tutorial's"
        if not all(s.time_source.startswith("--confirm") for s in pair):
            speed += " (1 run each)"  # as the accuracy's; a machine's timings drift
    row(
        "Training time per epoch",  # each cell says where it comes from
        "seconds_per_epoch",
        [
            _num(
                s,
                s.seconds_per_epoch,
                f"{s.seconds_per_epoch:.2f} s"
                if s.seconds_per_epoch is not None
                else "not measured",
                s.time_source,
            )
            for s in sides
        ],
        speed,
    )
    row(
        "Parameters",
        "param_count",
        [
            _num(s, s.param_count, f"{s.param_count:,}" if s.param_count is not None else "?")
            for s in sides
        ],
    )
    if pair and pair[0].trial != pair[1].trial:
        what = "Hyperparameters that differ" if v.differing else "Hyperparameters: identical"
        rows.append(f"<tr><th colspan='4' class='group'>{what} (the seed aside)</th></tr>")
    for key, a, b in v.differing:
        cells = [f"<td>{'not used' if x is None else escape(short(x))}</td>" for x in (a, b)]
        row(key, f"config:{key}", cells)
    return f"{out}<table id='verdict-table'>{''.join(rows)}</table>"


def _test_cell(s: Side) -> str:
    if s.test is None:
        return f"<td data-role='{s.role}'>{escape(s.test_source)}</td>"
    text = f"{s.test.mean:.2%}"
    if s.test.n > 1:
        text += f" ± {s.test.std * 100:.2f} pp (sd)"
    return _num(s, s.test.mean, text, s.test_source)


def _num(s: Side, value: float | None, text: str, source: str = "") -> str:
    # data-value keeps the stored number exactly, so a reader (or a test) need not parse text.
    raw = "" if value is None else repr(value)
    small = f"<br><small>{escape(source)}</small>" if source else ""
    return (
        f"<td class='num' data-role='{s.role}' data-trial='{s.trial}' "
        f"data-value='{escape(raw)}'><span class='v'>{escape(text)}</span>{small}</td>"
    )


def _ci(v: Verdict) -> str:
    d = v.difference
    if d is None:
        return "interval: only with --confirm"
    return f"{d.diff * 100:+.2f} pp, {d.level:.0%} CI {d.low * 100:+.2f} to {d.high * 100:+.2f} pp"


def _table(frame: pd.DataFrame, table_id: str) -> str:
    shown = frame.copy()
    for col in shown.columns:
        if col == "val_acc" or (col.startswith("test_acc") and not col.endswith("_pp")):
            shown[col] = [percent(v) if isinstance(v, float) else v for v in shown[col]]
        elif col.endswith("_pp"):
            shown[col] = [f"{v:.2f}" if not math.isnan(v) else "" for v in shown[col]]
        elif shown[col].dtype.kind == "f":
            shown[col] = [short(v) if not math.isnan(v) else "" for v in shown[col]]
        elif shown[col].dtype.kind == "i" and col != "trial":
            shown[col] = [f"{v:,}" for v in shown[col]]
        elif shown[col].dtype.kind == "O":  # a parameter a trial's schedule does not use
            shown[col] = ["" if v is None else v for v in shown[col]]
    html = shown.to_html(index=False, table_id=table_id, na_rep="", border=0, escape=True)
    return f"<div class='scroll'>{html}</div>"
